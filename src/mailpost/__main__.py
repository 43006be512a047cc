from mailpost.cli import main

raise SystemExit(main())
