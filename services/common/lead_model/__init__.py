"""Lead-conversion model support shared by the ML and realtime services.

Import the public API from `services.common.scoring`; the submodules are:
`features` (what a lead is), `artifact` (versioned files, verification) and
`scorer` (cached, chunked inference).
"""
