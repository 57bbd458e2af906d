"""GitHub's rule for a repository's full name, for every module that takes one.

``OWNER/NAME``: the owner (a user or an organization) is 1-39 letters, digits
or hyphens and starts with a letter or digit; the name is 1-100 letters,
digits, ``.``, ``_`` or ``-``, and is neither ``.`` nor ``..`` (GitHub refuses
both, and in a REST path they would walk up a level).
"""

from __future__ import annotations

import re
from typing import Final

#: Use with ``fullmatch`` (``$`` would accept a trailing newline).
REPOSITORY: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/(?!\.\.?\Z)[A-Za-z0-9._-]{1,100}")
