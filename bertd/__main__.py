from bertd.cli import main

raise SystemExit(main())
