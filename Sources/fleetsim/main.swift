import FleetsimCore

FleetsimMain.main()
