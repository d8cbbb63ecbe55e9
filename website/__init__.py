"""Reference credit website: publication API and public portal."""
