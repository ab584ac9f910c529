"""`python -m resnet_tui` runs the `resnet-tui` command."""

from resnet_tui.main import main

main()
