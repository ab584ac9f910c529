"""The interactive Textual app that `resnet-tui` opens with no subcommand."""
