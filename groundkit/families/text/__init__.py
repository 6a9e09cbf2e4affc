"""Text encoders shared by families: CXR-BERT / BERT (groundkit's own class, no remote code) and CLIP."""
