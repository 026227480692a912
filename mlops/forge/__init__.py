"""Code forges (GitHub): opening pull requests and reading reviews, through one small HTTP client."""
