import sys

from study.devices import use_every_core

use_every_core()

from study.cli import main  # noqa: E402

sys.exit(main())
