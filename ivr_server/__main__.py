from ivr_server.cli import main

raise SystemExit(main())
