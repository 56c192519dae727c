"""PHPQ training: data, model (backbone, pyramid hybrid pooling, product quantizer), losses, loop, evaluation."""
