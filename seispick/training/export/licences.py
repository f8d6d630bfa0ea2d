"""LICENSE texts of the model folders seispick writes: the MIT text, data attributions, and the default
LICENSE of a user's model (MIT for seispick's part; the training data's terms are the user's to add)."""

from __future__ import annotations

from seispick.models.card import ModelCard

__all__ = ["LICENCE_FILE", "MIT_TEXT", "NCEDC_NOTE", "STEAD_NOTE", "default_licence"]

LICENCE_FILE = "LICENSE"

MIT_TEXT = """Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

STEAD_NOTE = """Training data: STEAD, the STanford EArthquake Dataset (Mousavi, S. M., Sheng, Y., Zhu, W., & Beroza,
G. C. (2019). IEEE Access, 7, 179464-179476, https://doi.org/10.1109/ACCESS.2019.2947848), distributed under
CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); here its 50 recordings of station TA.109C as shipped
with the EQTransformer repository's test data (MIT, Copyright (c) 2020-2025 S. Mostafa Mousavi)."""

NCEDC_NOTE = """Training data: the labelled NCEDC recordings of the PhaseNet repository (dataset/, MIT, Copyright (c)
2021 Weiqiang Zhu), waveforms from the Northern California Earthquake Data Center."""


def default_licence(card: ModelCard) -> str:
    """LICENSE of a model trained or fine-tuned by a user: MIT for the network code and seispick's weights (and
    the original PhaseNet's, when fine-tuned from them); the training data keep their own terms."""
    original = "PhaseNet" in card.citation and "original" in card.provenance.lower()
    holders = (
        "Copyright (c) 2018 Weiqiang Zhu (PhaseNet architecture and original weights)\n" if original else ""
    ) + "Copyright (c) 2026 the seispick authors (training code)\n"
    return (
        f"{card.name}: {card.provenance or 'a model written by seispick'}\n\nMIT License\n\n{holders}\n"
        f"{MIT_TEXT}\nTraining data: {card.training_data or 'not stated'}. The data keep their own terms, which "
        "seispick cannot know: add them to this file before you share the model.\n"
    )
