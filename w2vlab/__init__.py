"""w2vlab: export a W2V-BERT 2.0 speaker encoder to TorchScript, with parity proofs."""

__version__ = "0.1.0"
