"""nnrun's Hydra config groups; a package so that Hydra finds them as pkg://nnrun.conf."""
