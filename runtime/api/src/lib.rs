//! REST types shared by the Weir runtime (server) and its clients.
