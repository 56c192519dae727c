"""Files shipped with PHPQ Search: the default model (models/) and its model card."""
