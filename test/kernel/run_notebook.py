"""Executes a notebook headless with nbclient and writes the executed copy (used by the mocha test)."""
import os
import sys

import nbformat
from nbclient import NotebookClient

src, dst = sys.argv[1], sys.argv[2]
nb = nbformat.read(src, as_version=4)
client = NotebookClient(nb, kernel_name=os.environ.get("LORALAB_KERNEL_NAME", "loralab"), timeout=int(os.environ.get("LORALAB_CELL_TIMEOUT", "60")), resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}})
client.execute()
nbformat.write(nb, dst)
