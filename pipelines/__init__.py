"""DVC stage entry points (generate → train → evaluate), each a thin layer over src/."""

from src.errors import quiet_interrupt_while_starting

quiet_interrupt_while_starting()
