"""What is asked: taxonomies, instrument files and their items (one module per kind), tables and
hub datasets as instruments, and the persona prompts."""
