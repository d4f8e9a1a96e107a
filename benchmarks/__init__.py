"""Speed and overhead measurements (see run_all.py); not part of the installed packages."""
