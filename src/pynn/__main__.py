"""python -m pynn: see pynn.cli."""
import sys

from pynn.cli import main

sys.exit(main())
