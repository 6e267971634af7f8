"""`python -m tests.pi [--arch arm64|armhf] ...`: see tests/pi/run.py."""

from tests.pi.run import main

raise SystemExit(main())
