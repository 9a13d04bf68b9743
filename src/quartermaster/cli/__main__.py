"""``python -m quartermaster.cli``."""

from quartermaster.cli import main

main()
