"""The policy's history (append-only): written by the change pipeline with every change
(`repository.record`), read back as the policy of an instant or a version (`timeline`)."""
