"""Training: procedurally generated puppet data (`puppets`), training samples and the dataset builder (`dataset`)."""
