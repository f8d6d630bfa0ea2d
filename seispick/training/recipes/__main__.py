"""``python -m seispick.training.recipes``: build the shipped models (:mod:`.shipped_models`)."""

from seispick.training.recipes.shipped_models import main

main()
