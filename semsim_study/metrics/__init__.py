"""Existing privacy metrics on reconstructions: MSE, PSNR, SSIM, LPIPS per image, FID per set.

Modules, one job each:

- ``pixel``: batched MSE / PSNR / SSIM on torch (scikit-image's definitions, float64);
- ``frechet``: streaming set statistics and the Fréchet distance (FID's formula);
- ``featurenet``: the pipeline's own feature network (offline stand-in for ImageNet backbones);
- ``imagenet``: lpips' and pytorch-fid's standard backbones from local weight files;
- ``feature_extractors``: one interface over the two (LPIPS distances + FID features per batch);
- ``classification``: the paper code's "does a classifier still recognise it" baseline;
- ``pairs``: reading the attack stage's index files and images, batch by batch;
- ``compute``: the streaming loop that ties them together for one dataset.
"""
