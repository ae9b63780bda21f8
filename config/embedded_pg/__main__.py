import sys

from config.embedded_pg import main

raise SystemExit(main(sys.argv[1:]))
