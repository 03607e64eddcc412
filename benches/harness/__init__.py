"""The end-to-end benchmark harness: kiln side by side with Buildah (and optionally Kaniko) on
generated corpora, pushing to one local registry, with the physical limits measured in the same
run. Python's standard library only, so it runs on any machine that runs the integration tests."""
