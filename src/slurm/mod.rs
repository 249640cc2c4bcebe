//! Slurm's own string formats: TRES lists, GRES specs, host lists, array task ranges.
