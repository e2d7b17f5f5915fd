#!/usr/bin/env python3
"""Kept for users of the original workflow: `hf_generate.py --model-key KEY ...` = `mgen generate --model-key KEY ...`."""

import sys

from musicgen_cli.cli.app import main

if __name__ == "__main__":
    sys.argv = ["mgen", "generate", *sys.argv[1:]]
    main()
