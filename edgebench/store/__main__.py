"""``python -m edgebench.store``: list and clean the store (:mod:`edgebench.store.admin`)."""

from edgebench.store.admin import main

main()
