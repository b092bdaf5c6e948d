"""The people gallery `openimm serve` shows at `/`: a static page calling the IMM
operations, face thumbnails, and browser sessions granted by access keys."""
