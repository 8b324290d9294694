"""The package's version (``mcu --version``, every stage's record and fingerprint), re-exported as
``mcu_lightning.__version__``; here, low in the layers, so the package's own modules read it without importing the
root package (whose ``TYPE_CHECKING`` block names the whole public API)."""

__version__ = "0.2.0"
