"""`python -m resnet_tui` runs the `resnet-tui` command."""

from resnet_tui.cli import main

main()
