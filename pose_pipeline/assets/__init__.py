"""Files the project takes from package indexes or makes itself: pinned wheels, real clips, synthetic videos."""
