"""The API's documentation: the OpenAPI document's settings (`config`), the response headers it
declares (`headers`) and the page at /schema, served with its assets from this process."""
