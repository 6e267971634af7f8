"""Where photos come from. Each source is a small module behind the interface in base.py."""
