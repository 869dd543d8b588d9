"""DVC stage entry points (generate → train → evaluate), each a thin layer over src/."""
