"""The captcha reader's library: configuration, labels, images, data, models, checkpoints,
training and evaluation. No argument parsing and no printing here: that is what jobs/ do."""
