"""Models: MViTv2 and the ViViT factorised encoder, with one head per dataset."""
