//! Slurm's number objects (`{"set": true, "infinite": false, "number": 5}`, v0.0.39+).
