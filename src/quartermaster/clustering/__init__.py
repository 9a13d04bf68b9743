"""quartermaster.clustering"""
