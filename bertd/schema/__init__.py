"""Request bodies as typed models, their validation errors in bertd's words, and the OpenAPI
document derived from the same models. Imports protocol and state records only."""
