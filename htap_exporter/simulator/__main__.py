import sys

from htap_exporter.simulator.app import main

sys.exit(main())
