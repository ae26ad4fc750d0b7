"""The small sample bundled with gill-eval: real-format annotation files plus synthetic images."""
