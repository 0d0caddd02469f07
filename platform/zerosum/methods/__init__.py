"""GAN methods as plug-ins: each is its players and what one update of each side computes.

    base      the Method interface and the phase context
    gan       G and D, with every stabiliser as a spec field (losses, R1/R2, packing, DiffAugment)
    gmmn      G alone, trained on MMD^2 to the reals (Li et al. 2015)
    mmd_gan   G and a feature critic (MMD-GAN, repulsive loss)
    infogan   G, D and a Q head that predicts G's latent codes back (Chen et al. 2016)
    pix2pix   a translator G and a PatchGAN D of (input, output) pairs, plus L1 (Isola et al. 2017)
    cyclegan  G: X -> Y, F: Y -> X and a PatchGAN per domain, with cycle consistency (Zhu et al. 2017)
    staged    a small G and D, then a pix2pix super-resolver of their samples

`method_for(spec)` gives the job's method; the loop, checkpoints, DDP, evals, tracking
and Tune only see its players and phases.
"""

from __future__ import annotations

from zerosum.config import JobSpec
from zerosum.methods.base import Method, PhaseContext
from zerosum.methods.cyclegan import CycleGanMethod
from zerosum.methods.gan import GanMethod
from zerosum.methods.gmmn import GmmnMethod
from zerosum.methods.infogan import InfoGanMethod
from zerosum.methods.mmd_gan import MmdGanMethod
from zerosum.methods.pix2pix import Pix2PixMethod
from zerosum.methods.staged import StagedMethod

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (GanMethod, GmmnMethod, MmdGanMethod, InfoGanMethod,
                                                                Pix2PixMethod, CycleGanMethod, StagedMethod)}

__all__ = ["METHODS", "Method", "PhaseContext", "method_for"]


def method_for(spec: JobSpec) -> Method:
    """The spec's method (catalog.METHOD_NAMES are its keys; a test ties them)."""
    return METHODS[spec.method](spec)
