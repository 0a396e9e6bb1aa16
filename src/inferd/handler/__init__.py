"""Request handlers: load the user's functions, fit inputs to the model, run pre -> model -> post."""
