#!/usr/bin/env python
"""Django's command-line utility; config/startup.py is the front door (settings, clear errors)."""

import sys


def main():
    from config.startup import run

    run(sys.argv)


if __name__ == "__main__":
    main()
