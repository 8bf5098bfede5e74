"""The captcha reader's library: configuration, labels, images, data, models, checkpoints,
training and evaluation. No argument parsing and no printing here: that is what jobs/ do."""
import os

# The most pixels OpenCV will allocate for one image it decodes (its own default is 2**30, about
# 3 GB of RGB for a file of a hundred bytes whose header lies). It reads this once, when cv2 is
# first imported, which is why it is set here, before any module of the package imports cv2.
# core.images.MAX_PIXELS holds its fast path to the same bound.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 26))
