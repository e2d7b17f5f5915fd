#!/usr/bin/env python3
"""Kept for users of the original workflow: `download_model.py <hf_repo_id>` = `mgen download <hf_repo_id>`."""

import sys

from musicgen_cli.cli.app import main

if __name__ == "__main__":
    sys.argv = ["mgen", "download", *sys.argv[1:]]
    main()
