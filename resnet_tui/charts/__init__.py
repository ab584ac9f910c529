"""Charts drawn as text, for the app and the CLI alike: scales, braille canvases, the LR range."""
