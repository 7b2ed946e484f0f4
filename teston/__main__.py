"""`python -m teston` runs the command line."""

from teston.cli import main

main()
