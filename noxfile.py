"""nox sessions of antsibull-nox, configured in antsibull-nox.toml (tests/ecosystem/run.sh runs extra-checks)."""
import antsibull_nox

antsibull_nox.load_antsibull_nox_toml()
